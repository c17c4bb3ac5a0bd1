"""Every message that crosses the wire, as a small frozen dataclass with a stable numeric tag, in one
package with a room per concern: :mod:`.base` (the bases and the tag registry), :mod:`.store`,
:mod:`.membership` and :mod:`.mapreduce`. Import it as one module (``from dynamr.rpc import messages as m``).

A message is encoded as its tag followed by its field values in declaration order (see
:mod:`dynamr.rpc.codec`), so adding a field at the end with a default keeps old peers readable; records
nested in a message are encoded the same way. The registry :data:`MESSAGE_TYPES` maps tags to classes;
servers dispatch on the class through a table.
"""

from dynamr.rpc.messages.base import *  # noqa: F403
from dynamr.rpc.messages.mapreduce import *  # noqa: F403
from dynamr.rpc.messages.membership import *  # noqa: F403
from dynamr.rpc.messages.store import *  # noqa: F403
