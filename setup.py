"""PinSage on TFX: graph-convolutional item embeddings for recommendation (Ying et al., KDD 2018).

Install with the pinned lock (`make test` / `scripts/bootstrap.sh` do this): the dependency pins live in
requirements.lock, not here, because unpinned resolution of this stack does not terminate.
"""

from setuptools import find_packages, setup

setup(
    name="pinsage-tfx",
    version="0.1.0",
    description="PinSage graph-convolutional item embeddings as a TFX / Beam / TF-GNN production stack",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=[
            "pipeline",
            "pipeline.*",
            "modules",
            "modules.*",
            "serving",
            "serving.*",
            "schema",
            "schema.*",
            "bench",
            "pinsage",
        ]
    ),
    package_data={"schema": ["*.pbtxt", "*.yaml"], "serving": ["static/*"]},
    include_package_data=True,
    # The runtime stack is pinned in requirements.lock (TFX 1.16, TF 2.16 + tf-keras, TF-GNN 1.0.3, Beam 2.59,
    # ScaNN 1.3.2, tensorflow-serving-api); listed loosely here so that `pip check` knows the relationship.
    install_requires=[
        "tfx==1.16.0",
        "tensorflow-gnn==1.0.3",
        "tf-keras~=2.16.0",
        "apache-beam==2.59.0",
        "scann==1.3.2",
        "tensorflow-serving-api",
        "aiohttp",
        "pyyaml",
        "tqdm",
    ],
    entry_points={"console_scripts": ["pinsage=pipeline.cli:main"]},
)
