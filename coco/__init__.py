"""COCO 2017 detection with the survey's EMS-ResNet10 spiking YOLO (YOLOv5 v6.0 recipe)."""
