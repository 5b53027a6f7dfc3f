"""The notebooks kagglekit ships: installed as package data, pushed to Kaggle by `kagglekit kaggle push-kernel`."""
