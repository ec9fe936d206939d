# One image for the API and the Ray nodes: the workers need the same code and workloads.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# Dependencies first, in a layer of their own: a change to the code rebuilds in seconds.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt && pip install -r /tmp/requirements.txt "ray[default]" && rm /tmp/requirements.txt
COPY service ./service
COPY workers ./workers
COPY search ./search
COPY migrations ./migrations
COPY lrsearch ./lrsearch
COPY README.md ./
RUN pip install --no-deps -e .
EXPOSE 8000
CMD ["lrsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
