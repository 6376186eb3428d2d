# toy
@problemName t
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:0.5,1,-2e-3:b
4,5:6,7:a
