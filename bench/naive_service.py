"""The obvious implementation, the reference of bench/http_throughput.py: one file, no tricks.

`imagehash.dhash(Image.open(f))` on the fully decoded upload, an `IndexBinaryFlat` scanned with
`range_search`, a plain `def` route (FastAPI runs it on its thread pool, as Doppel's).
Run: python bench/naive_service.py PORT [STORED_HASHES]
"""

import sys
from typing import Annotated

import faiss
import imagehash
import numpy as np
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

app = FastAPI()
index = faiss.IndexBinaryFlat(64)


@app.get("/health")
def health() -> dict[str, int]:
    return {"images": index.ntotal}


@app.post("/search")
def search(file: Annotated[UploadFile, File()], max_distance: int = 10) -> dict[str, object]:
    image_hash = imagehash.dhash(Image.open(file.file))
    query = np.packbits(image_hash.hash.flatten()).reshape(1, 8)
    limits, distances, ids = index.range_search(query, max_distance + 1)
    return {
        "hash": str(image_hash),
        "matches": [{"id": int(i), "distance": int(d)} for i, d in zip(ids, distances, strict=True)],
    }


if __name__ == "__main__":
    stored = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    index.add(np.random.default_rng(0).integers(0, 256, (stored, 8), dtype=np.uint8))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
