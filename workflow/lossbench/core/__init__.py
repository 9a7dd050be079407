"""What decides every trained model, shared by the stages that build or read one: the network
(`model`), the loss functions (`losses`), the augmentation (`augment`) and the order of the
training images and the held-out split (`batches`)."""
