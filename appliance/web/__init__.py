"""The appliance's HTTP face: POS API, screen stream and customer downloads."""

from .app import create_app

__all__ = ["create_app"]
