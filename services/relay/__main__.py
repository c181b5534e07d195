"""python -m services.relay"""

from services.relay.app import spec
from shared.runtime.service import run

run(spec, default_port=8089)
