"""Every table callgate has, for Alembic and for tests.

Core tables live in :mod:`callgate.store.models`; an area with tables of its own (webhooks, dialects …)
keeps them in its own ``store/models_<area>.py`` on the same ``Base`` and is imported here.
"""

from callgate.store import (  # noqa: F401 - registers the tables
    models,
    models_dialects,
    models_providers,
    models_telephony,
    models_users,
    models_webhooks,
)

metadata = models.Base.metadata

__all__ = ["metadata"]
