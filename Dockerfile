FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# The production build (static files + manifest, with DEBUG=false): the same script CI tests.
RUN sh deploy/build.sh
# Run unprivileged; VAR_DIR (Git mirrors, beat schedule) is the one place it writes.
RUN useradd --system --home-dir /var/lib/governance governance \
    && mkdir -p /var/lib/governance && chown governance /var/lib/governance
USER governance
ENV VAR_DIR=/var/lib/governance
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "-b", "0.0.0.0:8000", "-w", "4", "-k", "gthread", "--threads", "4"]
