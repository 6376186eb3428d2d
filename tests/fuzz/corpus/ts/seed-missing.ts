@dimensions 2
@classLabel true x
@data
1,?:3,4:x
