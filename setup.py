"""ament_python package definition: ROS share files plus one console script per job and node."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "spatial_mllm_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    package_data={PACKAGE: ["assets/**/*", "sim/gazebo/**/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="spatial_mllm_ros developers",
    maintainer_email="spatial-mllm-ros@example.com",
    description="Multi-frame spatial question answering for robots: ROS 2 node, reward annotator, "
    "MultiSPA data engine, training and evaluation.",
    license="Apache-2.0",
    python_requires=">=3.10",
    extras_require={"ray": ["ray"]},
    entry_points={
        "console_scripts": [
            "spatial-mllm = spatial_mllm_ros.cli:main",
            "spatial_mllm_node = spatial_mllm_ros.ros.spatial_node:main",
            "spatial_mllm_sim = spatial_mllm_ros.ros.sim_node:main",
        ],
    },
)
