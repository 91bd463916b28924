#!/bin/sh
# The production build, in one place: the Dockerfile runs it, and so does tests/platform/test_production.py.
#
#   deploy/build.sh            (STATIC_ROOT=/path to collect elsewhere than ./staticfiles; PYTHON=... to pick python)
#
# Collects the static files with DEBUG=false, so the storage is WhiteNoise's CompressedManifestStaticFilesStorage:
# every file gets a content-hashed name and a compressed copy, and staticfiles.json maps the names the templates use.
# A reference to a missing file (a stylesheet's url(...) or a source map) fails the build here, not a page later.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

# collectstatic reads the settings, which refuse to load with DEBUG off and no secrets. It uses neither: these are
# throw-away values for this one command, never written anywhere. The running panel gets its own from the environment.
SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')"
FERNET_KEYS="$("$PYTHON" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
export SECRET_KEY FERNET_KEYS
export DEBUG=false
if [ -z "${VAR_DIR:-}" ]; then  # the settings create VAR_DIR's folders; the build's own go away after it
  VAR_DIR="$(mktemp -d)"
  trap 'rm -rf "$VAR_DIR"' EXIT
  export VAR_DIR
fi

"$PYTHON" manage.py collectstatic --noinput --clear -v 1
"$PYTHON" - <<'PY'
import json, os, sys
from pathlib import Path
root = Path(os.environ.get("STATIC_ROOT") or "staticfiles")
manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
missing = [name for name, hashed in manifest.items() if not (root / hashed).is_file()]
if missing:
    sys.exit(f"build: manifest entries without a file: {missing}")
print(f"build: {len(manifest)} static files in {root.resolve()} (manifest staticfiles.json)")
PY
