"""Shortcut to ``python -m workbench.bench.compare_hf_peft`` from a source checkout, with the shared
SMS collection (``../shared/data``) as the default data when it is there.

    python benchmarks/compare_hf_peft.py --model /path/to/gpt2-checkpoint --steps 20 --json out.json
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.bench.compare_hf_peft import main
from workbench.core.config import SMS_SPAM

SHARED_SMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam_collection" / "SMSSpamCollection"

if __name__ == "__main__":
    sys.exit(main(default_data=str(SHARED_SMS) if SHARED_SMS.is_file() else SMS_SPAM))
