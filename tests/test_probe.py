#!/usr/bin/env python3
"""test_probe.py — tests of attn-probe, run by meson:

    test_probe.py MODE ATTN_PROBE PROBE_INFO OPENCL_BUILT VULKAN_BUILT

MODE is list | json | verify | no-devices; *_BUILT are yes | no. PROBE_INFO (tests/probe_info.c) prints what the
public API says about devices and plans; attn-probe must report the same. clinfo and
vulkaninfo, where installed, are a second, independent witness of which devices exist."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

TYPE_WORDS = {0: "other", 1: "cpu", 2: "integrated_gpu", 3: "discrete_gpu"}
FAMILY_WORDS = {0: "auto", 1: "cpu", 2: "gpu"}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)
    return cond


def run(cmd, env=None, timeout=300):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=timeout, universal_newlines=True)
    return p.returncode, p.stdout, p.stderr


def api_devices(probe_info, env=None):
    rc, out, err = run([probe_info, "devices"], env=env)
    if rc != 0:
        sys.exit("probe_info devices failed: " + err)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def api_plan(probe_info, dev, head_dim, tokens):
    rc, out, err = run([probe_info, "plan", dev["backend"], str(dev["backend_index"]),
                        str(head_dim), str(tokens)])
    if rc != 0:
        sys.exit("probe_info plan failed: " + err)
    return json.loads(out)


def clinfo_devices():
    """Device names the OpenCL ICD loader lists, or None without clinfo."""
    if not shutil.which("clinfo"):
        return None
    rc, out, _ = run(["clinfo", "-l"])
    if rc != 0:
        return []
    return [m.group(1).strip() for m in re.finditer(r"Device #\d+: (.*)", out)]


def vulkaninfo_devices():
    """Device names the Vulkan loader lists, or None without vulkaninfo."""
    if not shutil.which("vulkaninfo"):
        return None
    try:
        rc, out, _ = run(["vulkaninfo", "--summary"], timeout=60)
    except subprocess.TimeoutExpired:
        return None
    if rc != 0:
        return []
    return [m.group(1).strip() for m in re.finditer(r"deviceName\s*=\s*(.*)", out)]


def clinfo_raw():
    """{device name: {CL_DEVICE_*: value}} from clinfo --raw, or None without clinfo."""
    if not shutil.which("clinfo"):
        return None
    rc, out, _ = run(["clinfo", "--raw"])
    devs, cur = {}, None
    for m in re.finditer(r"^\[[^\]]*/(\d+)\]\s+(CL_DEVICE_\w+)\s+(.*)$", out, re.M):
        key, val = m.group(2), m.group(3).strip()
        if key == "CL_DEVICE_NAME":
            cur = devs.setdefault(val, {})
        elif cur is not None:
            cur.setdefault(key, val)
    return devs


def vulkaninfo_raw():
    """{device name: {limit: value}} from vulkaninfo, or None without it."""
    if not shutil.which("vulkaninfo"):
        return None
    try:
        rc, out, _ = run(["vulkaninfo"], timeout=60)
    except subprocess.TimeoutExpired:
        return None
    devs, cur = {}, None
    for m in re.finditer(r"^\s*(deviceName|maxComputeSharedMemorySize|subgroupSize)\s*=\s*(.*)$", out, re.M):
        key, val = m.group(1), m.group(2).strip()
        if key == "deviceName":
            cur = devs.setdefault(val, {})
        elif cur is not None:
            cur.setdefault(key, val)
    return devs


def probe_json(probe, args=(), env=None, timeout=300):
    rc, out, err = run([probe, "--json"] + list(args), env=env, timeout=timeout)
    try:
        doc = json.loads(out)
    except ValueError as e:
        check(False, "attn-probe --json %s is not JSON (%s): %r %s" % (" ".join(args), e, out[:400], err))
        return rc, None
    return rc, doc


def test_list(probe, probe_info, opencl_built, vulkan_built):
    api = api_devices(probe_info)
    rc, out, err = run([probe])
    print(out)
    check(rc == 0, "attn-probe exits 0 (got %d: %s)" % (rc, err))
    blocks = re.findall(r"^Device (\d+): (.*) \[(\w+) #(\d+)\]$", out, re.M)
    check(len(blocks) == len(api), "one block per device: %d blocks, the API has %d devices"
          % (len(blocks), len(api)))
    for d, b in zip(api, blocks):
        check(int(b[0]) == d["number"] and b[1] == d["name"],
              "block %s names %r; the API says device %d is %r" % (b[0], b[1], d["number"], d["name"]))
    check(any(d["backend"] == "reference" for d in api), "the API lists the reference backend")
    check("attn reference" in out, "the listing shows the reference backend")
    for label in ("compute units", "global memory", "max single allocation", "f16 storage",
                  "head_dim 64", "head_dim 128", "largest head_dim", "one-pass context",
                  "beyond one pass", "quirk flags", "cooperative matrix", "integer dot product"):
        check(out.count(label) >= len(api), "every block has a %r line" % label)

    # A second witness: the devices the OpenCL and Vulkan loaders list must all be there.
    cl = clinfo_devices()
    if not opencl_built:
        print("libattn built without OpenCL: OpenCL cross-check skipped")
        check("OpenCL 0 (backend not built)" in out, "the summary says OpenCL is not built")
        cl = []
    elif cl is None:
        print("clinfo not installed: OpenCL cross-check skipped")
    for name in cl or []:
        check(any(d["backend"] == "opencl" and d["name"] == name for d in api) and name in out,
              "OpenCL device %r (clinfo -l) is listed" % name)
    vk = vulkaninfo_devices()
    if not vulkan_built:
        print("libattn built without Vulkan: Vulkan cross-check skipped")
        check("Vulkan 0 (backend not built)" in out, "the summary says Vulkan is not built")
    elif vk is None:
        print("vulkaninfo not installed: Vulkan cross-check skipped")
    else:
        for name in vk:
            check(any(d["backend"] == "vulkan" and d["name"] == name for d in api) and name in out,
                  "Vulkan device %r (vulkaninfo) is listed" % name)

    # Selection and usage errors.
    rc, out, _ = run([probe, "--backend", "reference"])
    check(rc == 0 and len(re.findall(r"^Device \d+:", out, re.M)) == 1 and "attn reference" in out,
          "--backend reference lists exactly the reference device")
    ref = [d for d in api if d["backend"] == "reference"][0]
    rc, out, _ = run([probe, "--device=%d" % ref["number"]])
    check(rc == 0 and re.search(r"^Device %d: attn reference" % ref["number"], out, re.M),
          "--device N picks device N of the listing")
    rc, out, _ = run([probe, "--help"])
    check(rc == 0 and "usage: attn-probe" in out and "--verify" in out, "--help prints the usage")
    for bad, needle in ((["--bogus"], "unknown option"), (["--backend", "cuda"], "invalid backend"),
                        (["--device", "x"], "invalid device"), (["--device"], "needs a value"),
                        (["--json=1"], "takes no value"), (["stray"], "unexpected argument"),
                        (["--device", "4000000"], "no device 4000000")):
        rc, out, err = run([probe] + bad)
        check(rc == 2 and needle in err and "Traceback" not in err,
              "%s exits 2 saying %r (got %d: %r)" % (" ".join(bad), needle, rc, err))


def test_json(probe, probe_info):
    api = api_devices(probe_info)
    rc, doc = probe_json(probe)
    check(rc == 0, "attn-probe --json exits 0")
    if doc is None:
        return
    devs = doc["devices"]
    check(len(devs) == len(api), "JSON lists %d devices; the API has %d" % (len(devs), len(api)))
    check(doc["gpu_count"] == sum(1 for d in api if d["type"] in (2, 3)), "gpu_count")
    by_backend = {b["name"]: b for b in doc["backends"]}
    for name in ("opencl", "vulkan", "reference"):
        check(by_backend[name]["device_count"] == sum(1 for d in api if d["backend"] == name),
              "backends[%s].device_count" % name)
    # Independent witnesses of the numbers, where the mapping is one to one.
    cl, vk = clinfo_raw() or {}, vulkaninfo_raw() or {}
    for j in devs:
        if j["backend"] == "opencl" and j["name"] in cl:
            raw = cl[j["name"]]
            for key, field in (("CL_DEVICE_MAX_COMPUTE_UNITS", "compute_units"),
                               ("CL_DEVICE_GLOBAL_MEM_SIZE", "global_mem_bytes"),
                               ("CL_DEVICE_MAX_MEM_ALLOC_SIZE", "max_alloc_bytes"),
                               ("CL_DEVICE_LOCAL_MEM_SIZE", "local_mem_bytes"),
                               ("CL_DEVICE_MAX_WORK_GROUP_SIZE", "max_work_group_size")):
                if key in raw:
                    check(str(j[field]) == raw[key], "%s: %s %r; clinfo says %s %s"
                          % (j["name"], field, j[field], key, raw[key]))
        if j["backend"] == "vulkan" and j["name"] in vk:
            raw = vk[j["name"]]
            if "maxComputeSharedMemorySize" in raw:
                check(str(j["local_mem_bytes"]) == raw["maxComputeSharedMemorySize"],
                      "%s: local_mem_bytes vs vulkaninfo maxComputeSharedMemorySize" % j["name"])
            if "subgroupSize" in raw and j["subgroup_sizes"]:
                check(str(j["subgroup_sizes"][0]) == raw["subgroupSize"],
                      "%s: subgroup size vs vulkaninfo" % j["name"])

    for a, j in zip(api, devs):
        tag = "device %d (%s)" % (a["number"], a["name"])
        check(j["compute_units"] == (a["compute_units"] or None), "%s: compute_units" % tag)
        for key in ("number", "backend", "backend_index", "name", "vendor", "vendor_id", "platform",
                    "driver_version", "api_version", "global_mem_bytes",
                    "max_alloc_bytes", "max_binding_bytes", "local_mem_bytes",
                    "max_work_group_size"):
            check(j[key] == a[key], "%s: %s is %r; the API says %r" % (tag, key, j[key], a[key]))
        for key in ("fp16_compute", "fp16_storage", "fp64", "unified_memory"):
            check(j[key] is bool(a[key]), "%s: %s" % (tag, key))
        check(j["type"] == TYPE_WORDS[a["type"]], "%s: type" % tag)
        check(j["subgroup_sizes"] == ([a["subgroup_size"]] if a["subgroup_size"] else None),
              "%s: subgroup_sizes" % tag)
        for key in ("integer_dot_product", "cooperative_matrix", "max_storage_buffer_range"):
            check(key in j, "%s: %s present (null when unknown)" % (tag, key))

        att = j["attention"]
        if not check(att is not None and att["error"] is None, "%s: attention facts" % tag):
            continue
        check("quirks" in att, "%s: quirks present" % tag)
        for plan in att["plans"]:
            ref = api_plan(probe_info, a, plan["head_dim"], 1024)
            if not check(ref["ok"] and plan["error"] is None, "%s: d=%d plan" % (tag, plan["head_dim"])):
                continue
            for key in ("block_m", "block_n", "vec_width", "work_group_size", "kernel"):
                check(plan[key] == ref[key], "%s: d=%d %s is %r; the API says %r"
                      % (tag, plan["head_dim"], key, plan[key], ref[key]))
            check(plan["family"] == FAMILY_WORDS[ref["family"]], "%s: d=%d family" % (tag, plan["head_dim"]))
        check(1 <= att["max_head_dim"] <= 256, "%s: max_head_dim in [1, 256]" % tag)

        # One pass: the plan at the reported length fits the budget and, padded to 64 keys,
        # each tensor fits the single-buffer limits; one token more breaks one of those.
        op = att["one_pass"]
        n = op["max_context"]
        if not check(n >= 1, "%s: one-pass context >= 1 (%r)" % (tag, n)):
            continue
        check(att["one_pass_max_context"] == n, "%s: one_pass_max_context" % tag)
        limit = min(x for x in (a["max_alloc_bytes"], a["max_binding_bytes"]) if x) \
            if (a["max_alloc_bytes"] or a["max_binding_bytes"]) else None

        def fits(tokens):
            p = api_plan(probe_info, a, 64, tokens)
            tensor = (tokens + 63) // 64 * 64 * 8 * 64 * 4
            return p["ok"] and p["device_bytes"] <= p["memory_budget"] and \
                (limit is None or tensor <= limit), p

        ok, p = fits(n)
        check(ok, "%s: %d tokens fit in one pass" % (tag, n))
        check(op["device_bytes"] == p.get("device_bytes"), "%s: one_pass.device_bytes %r vs API %r"
              % (tag, op["device_bytes"], p.get("device_bytes")))
        check(att["memory_budget_bytes"] == p["memory_budget"], "%s: memory budget" % tag)
        if n < 2 ** 31:
            check(not fits(n + 1)[0], "%s: %d tokens do not fit in one pass" % (tag, n + 1))

        # Beyond one pass: the scheduler takes the reported length (a scheduled plan whose
        # smallest step fits the budget) and not one token more, or it is null.
        sm = att["scheduler_max_context"]
        if a["backend"] == "reference":
            check(sm is None, "%s: the reference has no scheduler" % tag)
            continue
        if sm is None:
            p = api_plan(probe_info, a, 64, n + 1)
            check(not p["ok"] or (not p["scheduled"] and p["device_bytes"] > p["memory_budget"]),
                  "%s: scheduler_max_context null, and the API schedules nothing beyond one pass" % tag)
            continue
        sc = att["scheduler"]
        check(sm > n and sc["max_context"] == sm, "%s: scheduler_max_context %r > one pass %r" % (tag, sm, n))
        p = api_plan(probe_info, a, 64, sm)
        check(p["ok"] and p["scheduled"] and p["min_device_bytes"] <= p["memory_budget"],
              "%s: the API schedules %d tokens within the budget: %r" % (tag, sm, p))
        for key in ("segment_rows", "chunk_keys", "min_device_bytes"):
            check(sc[key] == p.get(key), "%s: scheduler.%s %r; the API says %r" % (tag, key, sc[key], p.get(key)))
        if sm < 2 ** 31:
            p = api_plan(probe_info, a, 64, sm + 1)
            check(not p["ok"] or p["min_device_bytes"] > p["memory_budget"],
                  "%s: %d tokens are beyond the scheduler: %r" % (tag, sm + 1, p))


def test_verify(probe, probe_info):
    api = api_devices(probe_info)
    rc, doc = probe_json(probe, ["--verify"], timeout=840)
    check(rc == 0, "attn-probe --verify --json exits 0 (got %d)" % rc)
    if doc is None:
        return
    check(doc["verify_pass"] is True, "verify_pass is true")
    check(len(doc["devices"]) == len(api), "every device verified")
    for j in doc["devices"]:
        v = j["verify"]
        tag = "device %d (%s)" % (j["number"], j["name"])
        hand = [c for c in v["cases"] if c["oracle"] == "hand"]
        refd = [c for c in v["cases"] if c["oracle"] == "reference"]
        check(len(hand) >= 4, "%s: the hand-computed cases ran" % tag)
        if j["backend"] != "reference":
            check(len(refd) >= 9, "%s: >= 9 problems against the reference" % tag)
            check(not any("not scheduled" in c["shape"] for c in refd),
                  "%s: the small-budget problem ran scheduled" % tag)
            names = " ".join(c["name"] + " " + c["shape"] for c in refd)
            for needle in ("dense", "causal", "GQA", "f16", "head_dim 7",
                           "q_len > kv_len", "kv_lens", "scheduled"):
                check(needle in names, "%s: a %r problem" % (tag, needle))
        for c in v["cases"]:
            check(c["pass"] and c["error"] is None and c["nonfinite"] == 0 and
                  c["max_rel_err"] is not None and c["max_rel_err"] <= c["tolerance"],
                  "%s: %s (%s) passes: %r" % (tag, c["name"], c["shape"], c))
        check(v["pass"] and v["failed"] == 0 and v["problems"] == len(v["cases"]), "%s: PASS" % tag)
        print("%s: %d problems, max |err| %.3g: %s" % (tag, v["problems"], v["max_err"],
                                                      "PASS" if v["pass"] else "FAIL"))
    # The text form: one PASS verdict per device.
    rc, out, err = run([probe, "--verify", "--backend", "reference"])
    check(rc == 0 and re.search(r"=> \d+ problems, 0 failed, .*: PASS$", out, re.M),
          "--verify --backend reference prints PASS (%d: %s %s)" % (rc, out, err))


def test_no_devices(probe, probe_info):
    # No OpenCL ICD and no Vulkan driver: an empty vendors directory (meson names one in
    # OCL_ICD_VENDORS; made here if missing) and a missing Vulkan manifest.
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        empty = env.get("OCL_ICD_VENDORS") or tmp
        os.makedirs(empty, exist_ok=True)
        if os.listdir(empty):
            sys.exit("OCL_ICD_VENDORS=%s is not empty" % empty)
        env["OCL_ICD_VENDORS"] = empty
        env.setdefault("VK_ICD_FILENAMES", "/nonexistent.json")
        env["VK_DRIVER_FILES"] = env["VK_ICD_FILENAMES"]
        api = api_devices(probe_info, env)
        check([d["backend"] for d in api] == ["reference"],
              "the API sees only the reference backend: %r" % api)
        rc, out, err = run([probe], env=env)
        print(out)
        check(rc == 0, "attn-probe exits 0 without drivers (%d: %s)" % (rc, err))
        check("no GPU devices" in out, "it says there are no GPU devices")
        check(re.search(r"^Device 0: attn reference", out, re.M), "it lists the reference backend")
        check(len(re.findall(r"^Device \d+:", out, re.M)) == 1, "and nothing else")
        rc, doc = probe_json(probe, env=env)
        if check(rc == 0 and doc is not None, "--json works without drivers"):
            check(doc["gpu_count"] == 0, "gpu_count 0")
            check([d["backend"] for d in doc["devices"]] == ["reference"], "JSON lists the reference only")
            check(all(b["device_count"] == (1 if b["name"] == "reference" else 0) for b in doc["backends"]),
                  "backend device counts 0, 0, 1")
        for backend, title in (("opencl", "OpenCL"), ("vulkan", "Vulkan")):
            rc, out, err = run([probe, "--backend", backend], env=env)
            check(rc == 0 and ("no %s device found" % title) in out,
                  "--backend %s exits 0 with a message (%d: %r %r)" % (backend, rc, out, err))
            rc, out, err = run([probe, "--backend", backend, "--verify"], env=env)
            check(rc == 0 and "no %s device found" % title in out, "--backend %s --verify exits 0" % backend)
        rc, out, err = run([probe, "--verify"], env=env)
        check(rc == 0 and "PASS" in out, "--verify passes on the reference backend alone (%d)" % rc)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    mode, probe, probe_info, opencl_built, vulkan_built = sys.argv[1:6]
    if mode == "list":
        test_list(probe, probe_info, opencl_built == "yes", vulkan_built == "yes")
    elif mode == "json":
        test_json(probe, probe_info)
    elif mode == "verify":
        test_verify(probe, probe_info)
    elif mode == "no-devices":
        test_no_devices(probe, probe_info)
    else:
        sys.exit("unknown mode " + mode)
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
