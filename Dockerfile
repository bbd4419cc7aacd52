# Doppel: duplicate-image detection service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOPPEL_HOST=0.0.0.0 \
    DOPPEL_PORT=8000 \
    DOPPEL_DATA_DIR=/data

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY main.py .
COPY app ./app

RUN useradd --system --uid 10001 --home-dir /app doppel \
    && mkdir -p /data && chown doppel /data
USER doppel

VOLUME ["/data"]
EXPOSE 8000
# Each process keeps its index in step with the store's change log, so several workers or
# replicas (DOPPEL_DATABASE_URL=postgresql://...) are fine; see README, "Running several replicas".
CMD ["python", "main.py"]
