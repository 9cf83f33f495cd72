"""Evergreen (MCI) REST v1, served at ``/rest/v1`` over ci-master's own data.

Enable it in master.cfg with ``plugins=["evergreen"]`` (entry point) or
``plugins=["plugins.evergreen:EvergreenPlugin"]``.

The mapping (one mapping, nothing copied)
-----------------------------------------

========================  ===================================================================
Evergreen                 ci-master
========================  ===================================================================
project (identifier)      a project (``projects.name``); its builders are its tasks' builders
version                   one project's part of a buildset: the buildset's build requests to
                          that project's builders.  ``order`` is the buildset id, so newer
                          versions have higher orders.  revision, branch and repository come
                          from the buildset's first source stamp; author and message from the
                          newest change of that source stamp.  Buildsets submitted by Trigger
                          steps are not listed (they are their parent's work).
build variant             a builder's ``variant:<id>`` tag (else the builder's name); its
                          display name is the ``variant_name:<text>`` tag (else the id)
build                     the tasks of one variant in one version (no entity of its own)
task                      one build request; its name is the builder's ``task:<name>`` tag
                          (else the builder's name).  Its times, worker and result come from
                          the request and its latest build (a retried build is an execution).
test results             ``TestResults`` steps read the JUnit file a task wrote and record its
                          cases (the plugin's one table, ``evergreen_test_results``)
activation                deactivating holds the requests no master has claimed: they are
                          claimed in the name of a master row that never runs ("evergreen:
                          deactivated tasks"), so no engine starts them; activating gives them
                          back to the queue.  Dispatched tasks run on, as in Evergreen.
========================  ===================================================================

Ids: version ``<project>_<revision>_<buildset id>``, build
``<project>_<variant>_<revision>_<buildset id>``, task ``<build id>_<task name>_<request id>``
(``latest`` stands for a missing revision).  Ids are resolved by their trailing number and
then checked whole.

Task statuses: ``undispatched`` (queued, held, or cancelled before running), ``dispatched``
(claimed by a master; no step started yet), ``started``, then ``success`` (success, warnings
or skipped) or ``failed`` (failure, exception, cancelled while running).  Builds and versions
are ``created``, ``started``, ``success`` or ``failed`` from their tasks; ``activated`` is
false while any of their tasks is held.  ``status_details.timed_out`` is true when a
``TaskCommand`` step timed out (recorded as the build property ``evergreen_timeout_stage``).

Times are RFC 3339 in UTC with second precision (ci-master stores seconds); a time not yet
reached is ``0001-01-01T00:00:00Z``.  ``time_taken`` is nanoseconds from the build's first
step to its end; ``expected_duration`` is the mean of the builder's last 10 successful
builds; test ``time_taken`` is the JUnit ``time``, in nanoseconds.

Writes: ``PATCH /rest/v1/versions/{id}`` needs ``Api-User`` (a ci-master user) and
``Api-Key`` (one of that user's API tokens, ``ci-master user token``), and a rule of
``auth`` allowing the action ``set_activation`` on ``evergreen_versions``; the master's auth
must be on.  The same action is at ``POST /api/v2/evergreen_versions/<bsid>`` (JSON-RPC).
"""

from plugins.evergreen.plugin import EvergreenPlugin
from plugins.evergreen.steps import TaskCommand, TestResults

__all__ = ["EvergreenPlugin", "TaskCommand", "TestResults"]
