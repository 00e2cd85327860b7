"""Data: sources, checks, splits and preprocessing -> :class:`Dataset`; inspection.

Sources (``data.source`` of a recipe, see :mod:`babysit.recipes`): HDF5
(``.h5``/``.hdf5``/``.hdf``) and NPZ files, ``cifar10:DIR``, ``mnist:DIR`` and
the builtins ``digits``, ``spiral``, ``gaussian``. One module per job:

    arrays       chunked statistics shared by checks, preprocessing, inspection
    formats      file readers (HDF5, NPZ, CIFAR-10, MNIST IDX) -> RawData; describe_file
    safe_pickle  the restricted unpickler for CIFAR-10 batches (plain values and arrays only)
    builtins     builtin data sets: registry BUILTIN_SETS, schema BUILTINS
    sources      kinds of source: registry SOURCES, source_kind, read_source
    checks       find_problems: why raw arrays are unusable
    preprocess   steps: registry STEPS, schema PREPROCESS, make_step
    dataset      Dataset, stratified_split, load_data (read, check, split, preprocess)
    inspection   inspect_data -> DataReport (for ``babysit data``)

The recipe schema of the data section lives here (BUILTINS, SOURCE_PREFIXES,
HDF5_SUFFIXES, NPZ_SUFFIXES, PREPROCESS, source_kind); nothing here imports
:mod:`babysit.recipes` at import time.
"""

from babysit.data.builtins import BUILTIN_SETS, BUILTINS, BUNDLED_DIGITS, Builtin
from babysit.data.checks import find_problems
from babysit.data.dataset import Dataset, load_data, prepare, stratified_split
from babysit.data.formats import SPLITS, RawData, describe_file, read_idx
from babysit.data.inspection import DataReport, LoadedData, SplitStats, array_stats, inspect_data
from babysit.data.preprocess import (COMPONENTS, PCA, PREPROCESS, STEPS, MeanImage, PerChannelMean,
                                     Standardize, Step, Whiten, make_step)
from babysit.data.sources import (ACCEPTED_SOURCES, HDF5_SUFFIXES, NPZ_SUFFIXES, SOURCE_PREFIXES,
                                  SOURCES, read_source, resolve_path, source_kind)

__all__ = ["Dataset", "RawData", "load_data", "inspect_data", "read_source", "find_problems",
           "stratified_split", "array_stats", "read_idx", "resolve_path", "make_step", "prepare",
           "MeanImage", "PerChannelMean", "Standardize", "PCA", "Whiten", "Step", "STEPS", "COMPONENTS",
           "PREPROCESS", "BUILTINS", "BUILTIN_SETS", "Builtin", "BUNDLED_DIGITS", "SOURCES",
           "SOURCE_PREFIXES", "HDF5_SUFFIXES", "NPZ_SUFFIXES", "SPLITS", "source_kind",
           "DataReport", "LoadedData", "SplitStats", "ACCEPTED_SOURCES", "describe_file"]
