"""Model definitions: builders for each unCLIP component and the Kandinsky 2.2 folder layout."""
