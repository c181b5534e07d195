"""python -m services.handling"""

from services.handling.app import spec
from shared.runtime.service import run

run(spec, default_port=8082)
