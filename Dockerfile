# One image for the API and the Ray nodes: the workers need the same code and workloads.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY search ./search
COPY migrations ./migrations
COPY lrsearch ./lrsearch
RUN pip install -e . "ray[default]"
EXPOSE 8000
CMD ["lrsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
