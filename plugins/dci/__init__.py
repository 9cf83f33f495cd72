"""DCI (Distributed CI) API v1 as a ci-master plugin, mounted at ``/api/v1``.

Partner labs' CI systems (remotecis) use it, through Red Hat's ``dciclient``/``dcictl``, to
find a topic's components, create or schedule jobs, report their states and upload their
test results.  Everything is stored in the plugin's ``dci_*`` tables and served through the
data API: the DCI types are visible at ``/api/v2/dci_*`` too, and their changes are events
(``dci_jobs/<id>/update``...).  See :mod:`plugins.dci.routes` for the routes, :mod:`plugins.dci.access`
for who may call them, and ``python -m plugins.dci --help`` to make teams, remotecis and feeders.
"""

from plugins.dci.plugin import DciPlugin

__all__ = ["DciPlugin"]
