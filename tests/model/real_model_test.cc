// Filled in once the llama.cpp goldens for the real 270M model land.
