"""The feature store stage (`extract_features`, and `import_features` for features made
elsewhere): a backbone's frozen features of every split, once, in one HDF5 file.

    store.py     the HDF5 feature store: write, validate, read
    extract.py   backbone -> store, in resumable, shardable chunks
    arrays.py    a store from arrays (.npz, .pt, .npy) and back
    head_fit.py  a linear head fitted on the cached features, for a backbone without one
"""
