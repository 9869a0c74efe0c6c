"""placeholder"""
def default_params(backend):
    return {"cases": ["quick"], "dtypes": ["fp32"]}
