"""A live, read-only dashboard of a study file: ``aio-ashb dashboard FILE`` (docs/dashboard.md).

* ``_view.py`` - :class:`StudyView`: one study's charts and table, folded in event by event;
* ``_app.py`` - :class:`Dashboard`: the read-only storage, the views, the pages and the JSON API;
* ``static/`` - the pages, their CSS and JavaScript glue (plotly.js comes from the ``plotly``
  package, served locally).
"""

from __future__ import annotations

from aio_ashb.web.dashboard._app import Dashboard
from aio_ashb.web.dashboard._view import StudyView

__all__ = ["Dashboard", "StudyView"]
