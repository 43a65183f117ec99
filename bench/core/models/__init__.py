"""Native OpenVLA-architecture model (Prismatic vision + projector + Llama executor) and its checkpoints."""
