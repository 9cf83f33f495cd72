"""Packaging for ci-master: the master daemon, its worker and the bundled plugins."""

from setuptools import find_packages, setup

setup(
    name="ci-master",
    version="0.1.0",
    description="A continuous-integration master daemon on Twisted with a pluggable data API",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["master", "master.*", "worker", "worker.*", "plugins", "plugins.*",
                                    "ci_common", "ci_common.*"]),
    package_data={
        "master": ["master.cfg.sample"],
        # the revisions are files Alembic reads, not a package: a wheel must carry them too
        "master.db.migrations": ["script.py.mako", "versions/*.py"],
    },
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.7",  # [tls]: pyOpenSSL and service_identity, which the worker's wss:// imports
        "klein>=24.8",
        "autobahn>=24.4",
        "txpostgres>=1.7",
        "psycopg2-binary>=2.9",
        "zope.interface>=6",
        "sqlalchemy>=2.0.20",
        "alembic>=1.13",
        "orjson>=3.9",
        "dciauth>=3",
        "werkzeug>=3",  # the plugins' routes raise its exceptions (Klein brings it; we import it)
        "prometheus-client>=0.20",
        "defusedxml>=0.7",  # JUnit XML from builds, parsed without entity expansion (TestResults)
    ],
    extras_require={
        "vault": ["hvac>=2"],  # SecretInVault
        "test": ["pytest>=8", "pytest-twisted>=1.14", "treq>=23.11", "ruff>=0.6", "dciclient>=4",
                 "playwright>=1.40", "aiosmtpd>=1.4", "schemathesis>=4.0",
                 "hvac>=2", "docker>=7",
                 "import-linter>=2.1",  # lint-imports: the architecture contracts in pyproject.toml
                 # mypy (pyproject.toml [tool.mypy]); a new mypy finds new things: upgraded on purpose
                 "mypy>=2.4,<2.5", "mypy-zope>=1.0.17,<1.1",
                 "types-defusedxml", "types-psycopg2", "types-hvac", "types-docker"],
        "docker": ["docker>=7"],  # DockerLatentWorker (master.engine.docker)
    },
    entry_points={
        "console_scripts": [
            "ci-master = master.cli:main",
            "ci-worker = worker.cli:main",
        ],
        "ci_master.plugins": [
            "dci = plugins.dci:DciPlugin",
            "selfserve = plugins.selfserve:SelfServePlugin",
            "evergreen = plugins.evergreen:EvergreenPlugin",
            "bileto = plugins.bileto:BiletoPlugin",
        ],
    },
)
