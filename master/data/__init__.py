"""The data API: resource types with getters (endpoints) and controls (actions).

Everything ci-master serves is read through :meth:`DataAPI.get` and changed through an
action or an update method of :class:`DataAPI`; the REST layer, the websocket and every
plugin API sit on top of it.  The data API knows no HTTP.
"""
