"""python -m services.verification"""

from services.verification.app import spec
from shared.service import run

run(spec, default_port=8083)
