"""The offline `sgl.Engine` API selects jenga with `radix_cache_backend="jenga"` (no CLI involved).

(Outputs equal to the default manager's are checked on servers, tests/server/test_text_models.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sglang as sgl

    def run(backend):
        engine = sgl.Engine(model_path=sys.argv[1], load_format="dummy", dtype="float32", device="cpu",
                            attention_backend="torch_native", disable_cuda_graph=True, max_total_tokens=2048,
                            random_seed=0, radix_cache_backend=backend, sleep_on_idle=True)
        try:
            params = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
            out = engine.generate("A lighthouse keeper counts the ships", params, return_logprob=True)
            state = engine.get_server_info()["internal_states"][0]
            return {"ids": out["output_ids"], "logprobs": [x[0] for x in out["meta_info"]["output_token_logprobs"]],
                    "jenga": state.get("jenga")}
        finally:
            engine.shutdown()

    if __name__ == "__main__":
        print(json.dumps({"jenga": run("jenga")}))
    """
)


def test_engine_api_serves_with_jenga(zoo, tmp_path) -> None:  # noqa: ANN001
    script = tmp_path / "engine_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "SGLANG_USE_CPU_ENGINE": "1", "SGLANG_JENGA_DUMMY_WEIGHT_RANGE": "0.5"}
    out = subprocess.run([sys.executable, str(script), str(zoo("gemma3"))], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stats = result["jenga"]["jenga"]
    assert set(stats["types"]) == {"full", "swa"}  # Gemma-3 runs as a hybrid sliding-window model
    assert stats["types"]["full"]["pages_used"] > 0
    assert len(result["jenga"]["ids"]) == 12 and len(result["jenga"]["logprobs"]) == 12
