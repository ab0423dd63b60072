"""The supervisor: the only writer to the store, and the keeper of job hosts.

:class:`Supervisor` implements :class:`chronos.backend.Backend` for the REST layer and
:class:`chronos.host.Upstream` for the hosts. It owns no Ray code: the ``chronos.actors``
package wraps it in a detached Ray actor and gives it a Ray
:class:`~chronos.runtime.Runtime`. It is made of three parts, one concept each:

- :mod:`.registry`: the jobs in memory (by id and by name), where each is placed, and
  their ``next_run``; API reads of a job are answered from it.
- :mod:`.journal`: claims, reports and pruning made durable, on one store writer thread
  (and a few reader threads for API reads, which never wait for a write).
- :mod:`.reconciler`: the calls that make hosts hold what the registry says, after each
  edit and in periodic rounds, outside the registry's lock.
"""

from chronos.supervisor.journal import FLUSH_CHUNK
from chronos.supervisor.supervisor import Supervisor

__all__ = ["FLUSH_CHUNK", "Supervisor"]
