"""python -m services.intake"""

from services.intake.app import spec
from shared.service import run

run(spec, default_port=8080)
