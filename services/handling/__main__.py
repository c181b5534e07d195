"""python -m services.handling"""

from services.handling.app import spec
from shared.service import run

run(spec, default_port=8082)
