"""The dataset layouts the course reads, one module per family, all built on `helpers.machinery.layouts.base`."""
