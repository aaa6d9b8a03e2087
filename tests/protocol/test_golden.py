"""The committed golden vectors (protocol/golden/) are what protocol/ produces today.

If one of these fails after a deliberate change to the wire format, regenerate with
`python -m protocol.golden` and make the Java core (android_sample/fedge-core) pass too.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from protocol import codec, golden


@pytest.mark.parametrize("name", sorted(golden.all_vectors()))
def test_committed_vectors_match_protocol(name):
    committed = (golden.GOLDEN_DIR / name).read_text()
    assert committed == golden.render(golden.all_vectors()[name]), f"{name} drifted; run python -m protocol.golden"


def test_codec_vectors_decode_within_one_step_of_the_input():
    for case in json.loads((golden.GOLDEN_DIR / "codec.json").read_text()):
        values = np.frombuffer(bytes.fromhex(case["values"]), "<f4")
        decoded = codec.decode(bytes.fromhex(case["payload"]), case["counts"]).values
        assert decoded.tobytes().hex() == case["decoded"]
        if "topk" in case["codec"]:  # the kept values (within a step when quantized), zero elsewhere
            kept = np.flatnonzero(decoded)
            assert len(kept) <= case["kept"] < len(values)
            assert np.abs(values[kept]).min() >= np.abs(np.delete(values, kept)).max() - 1e-6
        elif "sparse" in case["codec"]:  # a subset scaled by L / m: unbiased over seeds, not close per draw
            assert 0 < case["kept"] < len(values)
            if "rot" not in case["codec"]:  # only the kept coordinates are non-zero
                assert np.count_nonzero(decoded) <= case["kept"]
        elif case["codec"] == "f32":
            assert np.array_equal(decoded, values)
        else:
            bits = 8 if case["codec"].startswith("q8") else 4
            spread = float(values.max() - values.min()) * (4 if "rot" in case["codec"] else 1)
            assert np.max(np.abs(decoded - values)) <= spread / (2**bits - 1) + 1e-6, case["name"]


def test_uniforms_fix_the_payload_and_differ_from_other_draws():
    case = next(c for c in json.loads((golden.GOLDEN_DIR / "codec.json").read_text()) if c["name"] == "q8_two_chunks")
    values = np.frombuffer(bytes.fromhex(case["values"]), "<f4")
    uniforms = np.frombuffer(bytes.fromhex(case["uniforms"]), "<f4")
    spec = codec.CodecSpec.parse("q8", 4)
    arrays = codec.unflatten(values, [(5,), (3,)])
    assert codec.encode(arrays, spec, None, uniforms=uniforms).hex() == case["payload"]
    flipped = np.where(uniforms < 0.5, np.float32(0.999), np.float32(0.0))
    assert codec.encode(arrays, spec, None, uniforms=flipped).hex() != case["payload"]


# Kernels a CI machine may pick: OpenBLAS's per-CPU kernels (OPENBLAS_CORETYPE) and NumPy's
# runtime SIMD dispatch (NPY_DISABLE_CPU_FEATURES switches off the AVX-512 and AVX2 paths; a
# feature the CPU lacks is already off). The committed files came from one machine; these
# stand in for machines without AVX-512 (Haswell kernels, AVX2 loops) and without AVX at all.
_OTHER_CPUS = {
    "avx2_no_avx512": {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "sse_only": {"OPENBLAS_CORETYPE": "Prescott",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}


@pytest.mark.parametrize("cpu", sorted(_OTHER_CPUS))
def test_vectors_do_not_depend_on_the_cpus_kernels(cpu, tmp_path):
    env = {**os.environ, **_OTHER_CPUS[cpu], "OPENBLAS_VERBOSE": "2"}
    run = subprocess.run([sys.executable, "-m", "protocol.golden", str(tmp_path)], env=env, capture_output=True,
                         text=True, cwd=golden.GOLDEN_DIR.parents[1], timeout=300)
    assert run.returncode == 0, run.stderr
    if cpu == "avx2_no_avx512":  # the override took: OpenBLAS says which kernel it runs
        assert "Haswell" in run.stdout + run.stderr, run.stdout + run.stderr
    drifted = [p.name for p in sorted(golden.GOLDEN_DIR.glob("*.json"))
               if (tmp_path / p.name).read_text() != p.read_text()]
    assert not drifted, f"{drifted} differ when regenerated with {_OTHER_CPUS[cpu]}"


def test_exact_norm_is_correctly_rounded_where_blas_is_not_required_to_be():
    from fractions import Fraction

    from protocol import dp

    values = np.random.default_rng(7).normal(0.0, 1.0, 1001).astype(np.float32)
    values[0] = np.float32(3e38)  # float32 squares overflow; float64 ones do not
    exact_square = sum(Fraction(float(v)) ** 2 for v in values)
    norm = dp.exact_l2_norm(values)
    # sqrt of the correctly rounded sum: within half an ulp of the sum's rounding, checked exactly.
    assert Fraction(norm * norm) == pytest.approx(exact_square, rel=3e-16)
    assert dp.exact_l2_norm(values[::-1]) == norm  # order does not matter
