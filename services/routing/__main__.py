"""python -m services.routing"""

from services.routing.app import spec
from shared.runtime.service import run

run(spec, default_port=8081)
