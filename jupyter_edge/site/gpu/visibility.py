"""What an execution sees of the site's GPUs: only its own, in each vendor's way.

In a runner, environment variables choose the devices a GPU runtime opens:
``CUDA_VISIBLE_DEVICES`` (NVIDIA, Jetson), ``ROCR_VISIBLE_DEVICES`` and
``HIP_VISIBLE_DEVICES`` (AMD), ``ZE_AFFINITY_MASK`` (Intel's Level Zero). A
runner that holds none of a vendor's GPUs gets that vendor's variables set to
hide them all. In a container, the devices themselves are mapped: NVIDIA GPUs
through Docker's device requests (the NVIDIA container toolkit), AMD's through
``/dev/kfd`` and their ``/dev/dri/renderD*`` nodes, Intel's through their render
nodes; the runtime inside numbers what it sees from 0.

Variables are advice the runtimes follow; a container's device list is a
boundary. Sites that must keep executions apart run them in containers.
"""

from __future__ import annotations

from ...catalog import GPU

__all__ = ["GPU_VARIABLES", "container_devices", "hidden", "visible"]

#: The variables set for each vendor ("unknown": GPUs declared without a vendor,
#: treated as CUDA's, as before vendors were known).
GPU_VARIABLES = {
    "nvidia": ("CUDA_VISIBLE_DEVICES",),
    "unknown": ("CUDA_VISIBLE_DEVICES",),
    "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"),
    "intel": ("ZE_AFFINITY_MASK",),
}
#: Hides every device of the vendor: CUDA documents the empty list; HIP and ROCr,
#: like CUDA, keep only the devices listed before the first invalid index; Level
#: Zero's mask keeps only the devices it lists, and no device has index 999.
_NONE = {
    "CUDA_VISIBLE_DEVICES": "",
    "ROCR_VISIBLE_DEVICES": "-1",
    "HIP_VISIBLE_DEVICES": "-1",
    "ZE_AFFINITY_MASK": "999",
}


def _vendor(gpu: GPU) -> str:
    return gpu.vendor if gpu.vendor in GPU_VARIABLES else "unknown"


def _vendors(gpus: list[GPU]) -> list[str]:
    return list(dict.fromkeys(map(_vendor, gpus)))


def hidden(site_gpus: list[GPU]) -> dict[str, str]:
    """The environment of a runner that holds no GPU: every vendor's GPUs hidden."""
    return {variable: _NONE[variable] for vendor in _vendors(site_gpus) for variable in GPU_VARIABLES[vendor]}


def visible(site_gpus: list[GPU], held: list[GPU]) -> dict[str, str]:
    """The environment of an execution that holds ``held``: those visible, by
    each vendor's own numbers, and the site's other GPUs hidden."""
    env = hidden(site_gpus)
    for vendor in _vendors(held):
        ordinals = ",".join(str(g.index if g.ordinal is None else g.ordinal) for g in held if _vendor(g) == vendor)
        if vendor == "amd":
            # ROCr applies first and renumbers what it keeps from 0; HIP's list then
            # counts among those, so it names all of them (and overrides one inherited).
            count = sum(1 for g in held if g.vendor == "amd")
            env.update(ROCR_VISIBLE_DEVICES=ordinals, HIP_VISIBLE_DEVICES=",".join(map(str, range(count))))
        else:
            for variable in GPU_VARIABLES[vendor]:
                env[variable] = ordinals
        if vendor in ("nvidia", "unknown"):
            # NVML numbers GPUs in PCI bus order; CUDA, unless told, fastest first.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def container_devices(held: list[GPU]) -> dict:
    """Docker SDK options (``device_requests``, ``devices``) that give a container ``held``."""
    import docker

    options: dict = {}
    cuda = [str(g.index if g.ordinal is None else g.ordinal) for g in held if _vendor(g) in ("nvidia", "unknown")]
    if cuda:
        options["device_requests"] = [docker.types.DeviceRequest(device_ids=cuda, capabilities=[["gpu"]])]
    devices = []
    if any(g.vendor == "amd" for g in held):
        devices.append("/dev/kfd:/dev/kfd:rwm")  # ROCm's compute interface, one for every AMD GPU
    for gpu in held:
        if gpu.vendor in ("amd", "intel"):
            if not gpu.render_node:
                raise ValueError(f"GPU {gpu.index} ({gpu.model}) has no render node to give a container")
            node = f"/dev/dri/{gpu.render_node}"
            devices.append(f"{node}:{node}:rwm")
    if devices:
        options["devices"] = devices
    return options
