"""python -m services.routing"""

from services.routing.app import spec
from shared.service import run

run(spec, default_port=8081)
