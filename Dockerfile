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
# One process: the index lives in memory, so several workers would each hold their own copy.
CMD ["python", "main.py"]
