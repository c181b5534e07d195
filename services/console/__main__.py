"""python -m services.console"""

from services.console.app import spec
from shared.runtime.service import run

run(spec, default_port=8084)
