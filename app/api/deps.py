"""Typed access to the objects the lifespan creates, for route signatures."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.service import DoppelService


def get_service(request: Request) -> DoppelService:
    service: DoppelService = request.app.state.service
    return service


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServiceDep = Annotated[DoppelService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
