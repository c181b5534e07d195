"""python -m services.verification"""

from services.verification.app import spec
from shared.runtime.service import run

run(spec, default_port=8083)
