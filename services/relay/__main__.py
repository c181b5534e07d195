"""python -m services.relay"""

from services.relay.app import spec
from shared.service import run

run(spec, default_port=8089)
