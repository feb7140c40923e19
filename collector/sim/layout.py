"""Where every simulated GPU sits: node, rack, zone, and the tags its readings carry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from wattwise.collector.sim.dvfs import Ints
from wattwise.collector.sim.models import gpu_model
from wattwise.collector.sim.spec import FleetSpec

_UUID_NAMESPACE = uuid.UUID("5b0c1d2e-7a43-4c1f-9d5e-77a77e1f1ee7")


@dataclass(frozen=True, slots=True)
class Layout:
    """Index arrays that map GPUs to nodes, nodes to racks and zones, and the tags of each."""

    node_of_gpu: Ints
    zone_of_gpu: Ints
    rack_of_node: Ints
    zone_of_node: Ints
    slot_of_node: Ints
    rack_is_row_end: np.ndarray[tuple[int], np.dtype[np.bool_]]
    racks: tuple[str, ...]
    zones: tuple[str, ...]
    zone_cluster: tuple[str, ...]
    gpu_index: dict[tuple[str, int], int]
    gpu_tags: tuple[dict[str, str], ...]
    node_tags: tuple[dict[str, str], ...]

    @property
    def gpu_count(self) -> int:
        return len(self.node_of_gpu)

    @property
    def node_count(self) -> int:
        return len(self.rack_of_node)

    @classmethod
    def of(cls, spec: FleetSpec) -> Layout:
        racks = tuple(dict.fromkeys(n.rack for n in spec.nodes))
        zones = tuple(dict.fromkeys(n.zone for n in spec.nodes))
        cluster_of_zone = {n.zone: n.cluster for n in spec.nodes}
        rack_of_node = np.array([racks.index(n.rack) for n in spec.nodes], dtype=np.int64)
        zone_of_node = np.array([zones.index(n.zone) for n in spec.nodes], dtype=np.int64)
        node_of_gpu = np.repeat(np.arange(len(spec.nodes)), [n.gpus for n in spec.nodes])
        node_tags = tuple(
            {"host": n.host, "cluster": n.cluster, "zone": n.zone, "rack": n.rack}
            for n in spec.nodes
        )
        gpu_tags = tuple(
            {
                **node_tags[node],
                "gpu": str(g),
                "uuid": f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{n.host}/{g}')}",
                "model": gpu_model(n.gpu_model).product_name,
            }
            for node, n in enumerate(spec.nodes)
            for g in range(n.gpus)
        )
        return cls(
            node_of_gpu=node_of_gpu.astype(np.int64),
            zone_of_gpu=zone_of_node[node_of_gpu],
            rack_of_node=rack_of_node,
            zone_of_node=zone_of_node,
            slot_of_node=np.array([n.slot for n in spec.nodes], dtype=np.int64),
            rack_is_row_end=_row_ends(spec, racks),
            racks=racks,
            zones=zones,
            zone_cluster=tuple(cluster_of_zone[z] for z in zones),
            gpu_index={(t["host"], int(t["gpu"])): i for i, t in enumerate(gpu_tags)},
            gpu_tags=gpu_tags,
            node_tags=node_tags,
        )


def _row_ends(
    spec: FleetSpec, racks: tuple[str, ...]
) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
    """Each zone is one row of racks in spec order; its first and last racks end the row."""
    zone_of_rack = {n.rack: n.zone for n in spec.nodes}
    ends = np.zeros(len(racks), dtype=bool)
    for zone in dict.fromkeys(zone_of_rack.values()):
        members = [i for i, r in enumerate(racks) if zone_of_rack[r] == zone]
        ends[members[0]] = ends[members[-1]] = True
    return ends
