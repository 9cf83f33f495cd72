"""Mozilla BuildAPI self-serve as a ci-master plugin: rebuild, cancel and reprioritize builds at /self-serve.

Enable it in master.cfg with ``plugins=["plugins.selfserve:SelfServePlugin"]`` (or the
entry point ``selfserve``), or ``SelfServePlugin(trusted_proxies=[...])`` for settings.
"""

from plugins.selfserve.plugin import SelfServePlugin

__all__ = ["SelfServePlugin"]
