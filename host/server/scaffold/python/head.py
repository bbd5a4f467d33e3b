# world: {{world}}
"""{{name}}: a callpark policy plugin (world `{{world}}` of callpark:policy@0.2.0).

Every input a decision needs arrives as a parameter, and the answer is
checked by the host: see wit/policy.wit. `componentize-py -d wit -w {{world}}
bindings .` writes the typed bindings, to read.
"""

from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, types


def param(params: List[Tuple[str, str]], key: str) -> Optional[str]:
    """The value of a parameter, if the configuration sets it."""
    for k, v in params:
        if k == key:
            return v
    return None
