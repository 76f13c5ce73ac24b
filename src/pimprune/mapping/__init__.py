"""Mapping: weight matrices of a network, crossbar counting, packing and the functional simulator."""
