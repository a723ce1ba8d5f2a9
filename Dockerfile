# fedns container image: `docker build -t fedns:0.1.0 .`
# Run:  docker run -p 53:53/udp -p 53:53/tcp -p 8053:8053 \
#         -v $PWD/fedns.yaml:/etc/fedns/fedns.yaml:ro fedns:0.1.0
# (the config must listen on 0.0.0.0; see config/example.yaml)
# The process is not root and gets no capabilities: Docker >= 20.10 sets
# net.ipv4.ip_unprivileged_port_start=0 in the container, and deploy/ sets the
# same sysctl for Kubernetes, so port 53 can be bound as is. Elsewhere add
# --sysctl net.ipv4.ip_unprivileged_port_start=53 or listen on 5353.

# -- build stage: a wheel of fedns and of every dependency ----------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY healthwatch ./healthwatch
COPY dnsserver ./dnsserver
COPY providers ./providers
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[fast]"

# -- runtime stage: slim Python, the wheels, a non-root user ---------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10053 fedns \
    && useradd --system --uid 10053 --gid fedns --home-dir /var/lib/fedns --create-home fedns \
    && mkdir -p /etc/fedns && chown fedns:fedns /var/lib/fedns
USER 10053:10053
WORKDIR /var/lib/fedns
EXPOSE 53/udp 53/tcp 8053/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8053/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["fedns"]
CMD ["serve", "-c", "/etc/fedns/fedns.yaml"]
