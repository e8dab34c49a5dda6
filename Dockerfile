# Synthlab: one image for a Hugging Face Docker Space, a team server and a GPU host.
#   docker build -t synthlab .                                        # CPU torch (as pinned in requirements.txt)
#   docker build -t synthlab-gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker build -t synthlab-team --build-arg TEAM_LOGIN=1 .                  # + Streamlit's login (Authlib)
# TORCH_INDEX_URL installs the CUDA build of the same pinned torch version before the rest; run the GPU
# image with `docker run --gpus all …`. Data lives in the volume /data (SYNTHLAB_HOME).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ARG TEAM_LOGIN=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SYNTHLAB_HOME=/data \
    HF_HOME=/data/hf-cache \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

RUN useradd --create-home --uid 1000 synthlab \
    && mkdir -p /data /app \
    && chown synthlab:synthlab /data /app

WORKDIR /app
COPY --chown=synthlab:synthlab requirements.txt .
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' requirements.txt)"; \
    fi \
    && pip install -r requirements.txt \
    && if [ -n "$TEAM_LOGIN" ]; then pip install "$(grep -E '^streamlit==' requirements.txt | sed 's/streamlit/streamlit[auth]/')"; fi

COPY --chown=synthlab:synthlab . .

USER synthlab
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() == b'ok' else 1)"

CMD ["streamlit", "run", "streamlit_app.py", "--server.port=8501", "--server.address=0.0.0.0"]
