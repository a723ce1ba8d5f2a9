# fedns container image: `docker build -t fedns:0.1.0 .`
# Run:  docker run -p 53:53/udp -p 53:53/tcp -p 8053:8053 --read-only \
#         --cap-drop ALL --cap-add NET_BIND_SERVICE \
#         -v $PWD/fedns.yaml:/etc/fedns/fedns.yaml:ro fedns:0.1.0
# (the config must listen on 0.0.0.0; see config/example.yaml)
# The process is not root. Docker >= 20.10 sets
# net.ipv4.ip_unprivileged_port_start=0 in the container, and config/deploy/ sets the
# same sysctl for Kubernetes (plus NET_BIND_SERVICE), so port 53 can be bound
# as is. Elsewhere add --sysctl net.ipv4.ip_unprivileged_port_start=53 or
# listen on 5353.

# -- build stage: fedns and every dependency in a virtualenv ---------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY healthwatch ./healthwatch
COPY dnsserver ./dnsserver
COPY providers ./providers
# A non-editable install compiles the bytecode now, because the runtime root
# filesystem is read-only. pip and setuptools leave the venv afterwards.
RUN python -m venv /opt/fedns \
    && /opt/fedns/bin/pip install ".[fast]" \
    && /opt/fedns/bin/pip uninstall --yes pip setuptools \
    && rm -rf /opt/fedns/share

# -- runtime stage: slim Python, the venv, a non-root user -----------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="fedns" \
      org.opencontainers.image.description="Global DNS / L7 traffic director for services in many Kubernetes clusters" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/fedns/bin:$PATH
# Only the venv comes over from the build stage: no wheels, no compiler, no
# source tree. setuid/setgid bits are removed so nothing can regain root.
RUN groupadd --system --gid 10053 fedns \
    && useradd --system --uid 10053 --gid fedns --home-dir /var/lib/fedns \
       --shell /usr/sbin/nologin --create-home fedns \
    && mkdir -p /etc/fedns \
    && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
COPY --from=build /opt/fedns /opt/fedns
USER 10053:10053
WORKDIR /var/lib/fedns
EXPOSE 53/udp 53/tcp 8053/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8053/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["fedns"]
CMD ["serve", "-c", "/etc/fedns/fedns.yaml"]
