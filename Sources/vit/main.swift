import Tensors
print(OneDNN.version)
