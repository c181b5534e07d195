"""python -m services.intake"""

from services.intake.app import spec
from shared.runtime.service import run

run(spec, default_port=8080)
