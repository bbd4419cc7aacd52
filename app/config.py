"""The one place that reads configuration: environment variables prefixed DOPPEL_."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Doppel's settings; every field can be set as DOPPEL_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="DOPPEL_", env_ignore_empty=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(Path("./data"), description="Folder holding the SQLite store.")
    max_distance: int = Field(
        10, ge=0, le=64, description="Default Hamming distance (bits) at or under which images match."
    )
    max_upload_bytes: int = Field(25 * MIB, ge=1, description="Largest accepted image file, in bytes.")
    max_batch_bytes: int = Field(
        256 * MIB, ge=1, description="Largest accepted POST /images/batch body (all files or JSON), in bytes."
    )
    max_pixels: int = Field(
        100_000_000, ge=1, description="Largest accepted image, in pixels (width x height)."
    )
    log_level: str = Field("info", description="uvicorn log level: debug, info, warning, error.")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "doppel.sqlite3"
