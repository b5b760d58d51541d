# The user code image: billing_pipelines installed from its wheel (sql/, templates/ and assets/
# travel inside it, see [tool.hatch.build.targets.wheel.force-include]), serving the Dagster
# definitions over gRPC. The Helm chart (deploy/helm/values.yaml) runs it as the user code
# deployment, and K8sRunLauncher starts every run in a pod of this same image.
#
#   docker build -t billing-pipelines:0.1.0 .

FROM python:3.11-slim AS wheel
RUN pip install --no-cache-dir build==1.*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY billing_pipelines ./billing_pipelines
COPY sql ./sql
COPY templates ./templates
COPY assets ./assets
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
# WeasyPrint's libraries and the invoice fonts (the same list as scripts/system-deps.sh).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /dist/*.whl /tmp/
# The [k8s] extra: run pods load the instance, whose run launcher is dagster-k8s's.
RUN whl=$(ls /tmp/billing_pipelines-*.whl) && pip install --no-cache-dir "${whl}[k8s]" && rm /tmp/*.whl

RUN useradd --create-home --uid 10001 billing
USER billing
WORKDIR /home/billing
ENV BILLING_HOME=/home/billing/.billing \
    DAGSTER_HOME=/home/billing/dagster_home
COPY --chown=billing deploy/dagster.yaml /home/billing/dagster_home/dagster.yaml

EXPOSE 3030
CMD ["dagster", "api", "grpc", "--module-name", "billing_pipelines.definitions", "--host", "0.0.0.0", "--port", "3030"]
