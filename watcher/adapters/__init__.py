"""Protocol adapters: each turns batched raw reads into normalised positions, with no I/O of its own."""
