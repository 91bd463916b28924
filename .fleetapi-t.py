import os, time, json, secrets
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django; django.setup()
from django.test import Client
from fleet.services import registration_token_create
_t, tok = registration_token_create(actor="p", name="p")
c = Client()
r = c.post("/api/agent/register", json.dumps({"token": tok, "name": "prof-"+secrets.token_hex(3)}), content_type="application/json")
h = {"HTTP_AUTHORIZATION": "Agent "+r.json()["credential"]}
state = {"os_version":"24.04.1","apps":[{"name":"monitoring-agent","version":"2.3.1","running":True},{"name":"nginx","version":"1.26.2","running":True},{"name":"log-collector","version":"1.9.2","running":True}],"settings":{"ssh.password_auth":False,"firewall.enabled":True,"ntp.enabled":True},"updates":[{"kind":"os","name":"os","version":"24.04.3","released_at":"2026-11-20T08:00:00+00:00"}]}
b0 = json.dumps(state); s2 = json.loads(b0); s2["settings"]["ssh.password_auth"]=True; b1=json.dumps(s2)
def t(label, fn, n=200):
    fn(); s=time.process_time()
    for _ in range(n): fn()
    return (time.process_time()-s)/n*1000
flip=[0]
def changed():
    flip[0]^=1; c.post("/api/agent/heartbeat", b1 if flip[0] else b0, content_type="application/json", **h)
for rnd in range(3):
    a=t("healthz", lambda: c.get("/healthz"))
    b=t("hb", lambda: c.post("/api/agent/heartbeat", b0, content_type="application/json", **h))
    d=t("changed", changed, n=60)
    print(f"healthz {a:.2f}  unchanged {b:.2f}  changed {d:.2f}")
import cProfile, pstats
pr = cProfile.Profile(time.process_time); pr.enable()
for _ in range(300):
    c.post("/api/agent/heartbeat", b0, content_type="application/json", **h)
pr.disable()
st = pstats.Stats(pr); st.sort_stats("cumulative").print_stats(60)
